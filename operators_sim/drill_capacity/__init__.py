"""The capacity drill: ``ceir-sim drill capacity`` (docs/simulation.md, "Capacity drill").

September 2020 replayed on one machine: a register with a capacity, normal
TPP uploads, one importer uploading whole TAC ranges until the register is
full, legitimate registrations refused while phones keep being checked, then
the regulator's cure (find the ranges never seen on a network, revoke them
through the audited write path, raise the capacity, replay what was
refused) and, with the range guard on, the same upload refused.

==============  ================================================================
module          what it holds
==============  ================================================================
``plan``        the drill's sizes and every IMEI it uses
``register``    the ``ceir serve`` process, its PKI, and channels to it
``traffic``     phones checked through CheckEquipmentBatch, and the fill sampled
``uploads``     imports, late registrations, the refused ones and their replay
``cure``        the regulator's commands: ``ceir ranges find`` and ``revoke``
``report``      report.json, report.html and the timeline chart
``run``         ``CapacityDrill``: all of the above, in order
==============  ================================================================
"""
