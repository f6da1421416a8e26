@reliability @hosts @allure.label.epic:Reliability_under_faults
Feature: A network partition loses no acknowledged write
  Each node runs on a network host of its own, so the links between nodes can be cut while
  the clients can still reach every node. Only the side with a majority of the nodes may
  go on acknowledging writes; a node cut off from the majority must stop, because whatever
  it acknowledges alone, the majority never sees. After the heal the cut-off nodes catch up,
  and every acknowledged write is there once, with its newest value.

  @partition @blocker @allure.label.story:The_owner_of_a_key_is_cut_off_from_the_cluster
  Scenario: The owner of key-1 is cut off from the other nodes while clients write
    One client knows only the owner of key-1: it cannot route around the cut, so whatever
    that node does while it is alone is put to the test.

    Given a running cluster of 3 nodes that declare a silent node dead after 1 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 2 seconds to be acknowledged, and one more that knows only the owner of "key-1" and writes through it alone
    When the owner of "key-1" is cut off from the other nodes for 6 seconds
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the cut-off nodes applied no write once they had been cut off for the failure timeout twice
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds

  @partition @blocker @allure.label.story:The_cluster_is_split_into_a_majority_and_a_minority
  Scenario: Three nodes are split 1 | 2 while three clients write
    Given a running cluster of 3 nodes that declare a silent node dead after 1 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 2 seconds to be acknowledged
    When the cluster is split into "node-1" | "node-2", "node-3" for 6 seconds
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the cut-off nodes applied no write once they had been cut off for the failure timeout twice
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds

  @partition @critical @allure.label.story:The_cluster_is_split_into_a_majority_and_a_minority
  Scenario: Five nodes are split 2 | 3 while three clients write
    Given a running cluster of 5 nodes that declare a silent node dead after 1 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 2 seconds to be acknowledged
    When the cluster is split into "node-1", "node-2" | "node-3", "node-4", "node-5" for 6 seconds
    And every fault is healed and the cluster of 5 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the cut-off nodes applied no write once they had been cut off for the failure timeout twice
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds

  @partition @critical @allure.label.story:A_link_fails_in_one_direction_only
  Scenario: One node's messages to the others are lost while it still hears them
    A link can fail in one direction only: node-1 hears the others, they no longer hear
    node-1. For them it is silent, so it is dead; it must not go on acknowledging alone.

    Given a running cluster of 3 nodes that declare a silent node dead after 1 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 2 seconds to be acknowledged
    When what "node-1" sends to the other nodes is dropped for 6 seconds, while what they send still reaches it
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the cut-off nodes applied no write once they had been cut off for the failure timeout twice
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds

  @partition @critical @allure.label.story:A_slow_lossy_link_is_not_a_dead_node
  Scenario: A slow, lossy link to one node makes nobody declare it dead
    A link that loses some packets and carries little is slow, not broken: the nodes must
    keep each other as members and the partition map must not change.

    Given a running cluster of 3 nodes that declare a silent node dead after 3 seconds
    And 3 clients writing, each to new keys of its own and each key 2 times, one write at a time, each write given 3 seconds to be acknowledged
    When for 5 seconds the link of "node-2" drops 10% of what it sends and carries at most 512 kbit/s
    And every fault is healed and the cluster of 3 nodes re-forms within 15 seconds
    Then reading every key back within 10 seconds finds no acknowledged write lost and nothing that was not written
    And the owner and the backup of each of 200 written keys, spread over the run, hold its newest value within 10 seconds
