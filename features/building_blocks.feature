@AC-7
Feature: The cluster building blocks work as before
  The end-to-end flow stands on smaller parts: the key-to-partition rule, the partition
  router and its metrics, the circuit breaker, the connection states, partition-map refresh
  and the retry after a "not the owner" answer. Each keeps its documented behaviour.

  @critical
  Scenario Outline: Key "<key>" belongs to partition <partition>
    Then key "<key>" belongs to partition <partition> of 271

    Examples: worked examples of the TopGun reference
      | key          | partition |
      | key-1        | 236       |
      | key-0        | 245       |
      | test         | 232       |
      | user:42      | 48        |
      | users:abc123 | 228       |
      | hello        | 95        |
      |              | 199       |
      | é            | 105       |
      | 😀           | 102       |

  @normal
  Scenario: A circuit opens after repeated failures and closes again after a successful try
    Given a circuit breaker that opens after 5 failures and retries after 30 seconds
    When node "node-2" fails 4 times
    Then the circuit of "node-2" is closed
    When node "node-2" fails 1 more time
    Then the circuit of "node-2" is open
    And node "node-2" may not be used
    When 30 seconds pass
    Then node "node-2" may be used
    And the circuit of "node-2" is half-open
    When node "node-2" succeeds
    Then the circuit of "node-2" is closed

  @normal
  Scenario: The router counts every routed write once, as direct, fallback or partition miss
    Given a router with no partition map
    When the router routes "key-1"
    Then the routing metrics show 1 partition miss and 1 route in total
    Given the router holds the partition map of nodes "node-1", "node-2" and "node-3"
    And the router's connections to "node-1", "node-2" and "node-3" are up
    When the router routes "key-1"
    Then "key-1" is routed directly to its owner
    When the connection to the owner of "key-1" goes down
    And the router routes "key-1"
    Then "key-1" is routed by fallback to its backup
    And the routing metrics show 1 direct route, 1 fallback route, 1 partition miss and 3 routes in total
    When the router is offered a partition map older than the one it holds
    Then the router keeps the partition map it holds

  @normal
  Scenario: A client connection goes through its states up to signed in
    Given a running single node
    When a single-server client signs in as "test-user"
    Then its connection went through DISCONNECTED, CONNECTING, CONNECTED and AUTHENTICATED
    When the node has been killed
    Then its connection leaves AUTHENTICATED within 2 seconds

  @critical
  Scenario: The client takes a newer partition map when a node joins
    Given a running cluster of 2 nodes
    And a cluster-mode client that knows all 2 nodes and signs in as "test-user"
    And the client holds a partition map of 271 partitions within 5 seconds
    When a third node joins the cluster
    Then the client holds a newer partition map that includes the third node within 5 seconds

  @critical
  Scenario: A "not the owner" answer makes the client refresh its map and retry the write
    Given a running cluster of 3 nodes that refuse writes for partitions they do not own
    And a cluster-mode client without smart routing that knows all 3 nodes and signs in as "test-user"
    When the client writes {"value": 7} to a key that its first node does not own, in map "test"
    Then the write is acknowledged within 2 seconds
    And the owner of that key holds {"value": 7} in map "test"
    And the routing metrics show at least 1 not-owner retry and at least 1 map refresh
