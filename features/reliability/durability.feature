@reliability @durability @os_processes @allure.label.epic:Reliability_under_faults
Feature: A write acknowledged as on disk survives any crash
  Each node is started with a folder of its own on disk (its data dir) and keeps there every
  copy it holds. A client can ask for its writes to be acknowledged only once they are safe
  to a stated level:
  PERSISTED: on disk on the owner of the key and on its backup, so the write survives every
  node crashing at once;
  REPLICATED: in memory on the owner and on its backup, written to disk a moment later
  (within 50 milliseconds), so a crash of both may lose the writes of that last moment.
  Here three clients write at PERSISTED and one more at REPLICATED while nodes are killed
  without notice (SIGKILL), lose their disk, or are restarted one after the other. Once the
  cluster says it is safe again, every key is read back once: no write acknowledged at
  PERSISTED may be missing, and the report says how many REPLICATED writes were lost.
  The nodes must be processes the suite can kill and start again on their data dir: run
  with -D cluster=processes.

  Background:
    Given a running cluster of 3 nodes that keep their data on disk and declare a silent node dead after 2 seconds
    And 3 clients writing at PERSISTED and 1 client writing at REPLICATED, each to new keys of its own and each key 2 times, one write at a time, each write given 5 seconds to be acknowledged
    And 1000 writes have been acknowledged within 60 seconds

  @crash @blocker @allure.label.story:Every_node_crashes_at_once
  Scenario: Every node is killed at once and started again at the same address
    When every node is killed at once
    And every killed node is started again at the same address
    And the cluster of 3 nodes re-forms and says it is safe within 60 seconds
    And 50 more writes are acknowledged within 30 seconds
    Then one read of every key within 10 seconds finds no write acknowledged at PERSISTED lost and nothing that was not written
    And the writes acknowledged at REPLICATED that were lost are counted in the report

  @crash @blocker @allure.label.story:Two_of_three_nodes_crash_at_once
  Scenario: Two of the three nodes are killed at once and started again at the same address
    The partitions whose owner and backup were both on the killed nodes have no copy left
    in any memory: what the survivor did not hold must come back from the killed nodes' disks.

    When "node-1" and "node-2" are killed at once
    And every killed node is started again at the same address
    And the cluster of 3 nodes re-forms and says it is safe within 60 seconds
    And 50 more writes are acknowledged within 30 seconds
    Then one read of every key within 10 seconds finds no write acknowledged at PERSISTED lost and nothing that was not written
    And the writes acknowledged at REPLICATED that were lost are counted in the report

  @crash @critical @allure.label.story:A_node_loses_its_disk
  Scenario: A node is killed, loses its data on disk, and is started again at the same address
    The node comes back empty: everything it held must come back from the other copies,
    onto its disk, before the cluster says it is safe.

    When "node-2" is killed and the data it kept on disk is deleted
    And every killed node is started again at the same address
    And the cluster of 3 nodes re-forms and says it is safe within 60 seconds
    And 50 more writes are acknowledged within 30 seconds
    Then one read of every key within 10 seconds finds no write acknowledged at PERSISTED lost and nothing that was not written
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds
    And the writes acknowledged at REPLICATED that were lost are counted in the report

  @restart @critical @allure.label.story:A_rolling_restart_under_load
  Scenario: One node after the other is restarted while the clients write
    Each node is shut down gracefully (SIGTERM), started again on its data dir, and the next
    one waits until the cluster says it is safe.

    When one node after the other is shut down and started again at the same address, and the cluster of 3 nodes says it is safe within 60 seconds and acknowledges 50 more writes each time
    Then one read of every key within 10 seconds finds no write acknowledged at PERSISTED lost and nothing that was not written
    And the writes acknowledged at REPLICATED that were lost are counted in the report
