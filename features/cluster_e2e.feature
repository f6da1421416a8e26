@AC-1
Feature: Writes reach the partition owner and survive the owner leaving
  A cluster of nodes splits the data into 271 partitions. Each key belongs to one partition,
  which one node owns and another node keeps a backup of. A cluster-mode client knows the
  partition map, so it sends each write straight to the owner of its key. When that owner
  leaves, the client routes around it, and the write must still be stored and readable.

  Background:
    Given a running cluster of 3 nodes
    And a cluster-mode client that knows all 3 nodes and signs in as "test-user"

  @AC-2 @critical
  Scenario: The client signs in to every node and receives the partition map
    Then the client is signed in to all 3 nodes within 5 seconds
    And the client holds a partition map of 271 partitions within 5 seconds
    And the client's partition map is the one every node serves
    And smart routing is active

  @AC-3 @critical
  Scenario: A write of key-1 reaches the owner of its partition
    When the client writes {"value": 1} to "key-1" in map "test"
    Then the write is acknowledged within 2 seconds
    And the owner of "key-1" holds {"value": 1} in map "test"
    And the backup of "key-1" holds {"value": 1} in map "test"
    And the routing metrics show 1 direct route and no fallback route

  @AC-4 @blocker
  Scenario: The owner of key-1 is shut down and the next write goes through fallback routing
    Given the client has written {"value": 1} to "key-1" in map "test" and it was acknowledged
    When the owner of "key-1" is shut down while the client writes {"value": 2} to it in map "test"
    Then the write is acknowledged within 2 seconds
    And the write went by fallback routing
    And the new owner of "key-1" holds {"value": 2} in map "test" within 2 seconds
    And the new backup of "key-1" holds {"value": 2} in map "test" within 5 seconds
    And reading "key-1" from map "test" on the cluster gives {"value": 2} within 2 seconds

  @AC-5 @critical
  Scenario: The routing metrics count the direct route before the owner leaves and the fallback route after
    Given the client has written {"value": 1} to "key-1" in map "test" and it was acknowledged
    When the owner of "key-1" is shut down while the client writes {"value": 2} to it in map "test"
    Then the write is acknowledged within 2 seconds
    And the routing metrics show at least 1 direct route and at least 1 fallback route

  @AC-4 @blocker
  Scenario: The owner of key-1 is killed without warning and the next write still succeeds
    A killed node sends no notice. Whichever the client learns first, that its connection
    dropped or the cluster's new partition map, the write must go around the dead node:
    by fallback routing, or straight to the new owner.

    Given the client has written {"value": 1} to "key-1" in map "test" and it was acknowledged
    When the owner of "key-1" is killed while the client writes {"value": 2} to it in map "test"
    Then the write is acknowledged within 2 seconds
    And the write went around the former owner
    And the new owner of "key-1" holds {"value": 2} in map "test" within 2 seconds
    And the new backup of "key-1" holds {"value": 2} in map "test" within 5 seconds
    And reading "key-1" from map "test" on the cluster gives {"value": 2} within 2 seconds

  @AC-4 @critical
  Scenario: Once the client has the new partition map, writes of key-1 go directly to the new owner
    Given the client has written {"value": 1} to "key-1" in map "test" and it was acknowledged
    And the owner of "key-1" has been shut down
    When the client holds a partition map without the former owner within 2 seconds
    And the client writes {"value": 3} to "key-1" in map "test"
    Then the write is acknowledged within 2 seconds
    And the write went directly to the new owner of "key-1"
    And the new owner of "key-1" holds {"value": 3} in map "test"
