@reliability @allure.label.epic:Reliability_under_faults
Feature: Nothing acknowledged is lost while nodes die and stall
  A data grid is trusted with many clients writing while nodes crash, restart and freeze.
  Here several clients write at once, each to keys of its own, one write at a time, and
  note for every write whether it was acknowledged, refused for good, or left unknown
  (no answer in time, connection lost). Meanwhile nodes are killed or paused again and
  again. When the faults are over, every key is read back from the cluster: every
  acknowledged write must be there with its newest value, and nothing may be there that
  no client wrote. The report shows the counts, a sample of the history and a timeline of
  the faults. "-D soak_seconds=N" makes each fault loop last N seconds.

  @soak @critical @allure.label.story:Nodes_are_killed_and_restarted_while_clients_write
  Scenario: One node after the other is killed and restarted while three clients write
    Given a running cluster of 3 nodes that declare a silent node dead after 1.5 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 2 seconds to be acknowledged
    When for 6 seconds, one node after the other is killed and, 1 seconds later, restarted at the same address, and the cluster re-forms within 15 seconds each time
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds

  @soak @os_processes @critical @allure.label.story:A_node_is_paused_for_longer_than_the_failure_timeout
  Scenario: One node after the other is frozen for longer than the failure timeout, then resumed
    A paused node (a long garbage-collection pause, a stalled virtual machine) keeps its
    connections open but answers nothing. The others declare it dead after 1.5 seconds and
    take over its partitions; when it wakes up it must not undo what they acknowledged.

    Given a running cluster of 3 nodes that declare a silent node dead after 1.5 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 1 seconds to be acknowledged
    When for 6 seconds, one node after the other is paused for 3 seconds and resumed, and the cluster re-forms within 15 seconds each time
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds
