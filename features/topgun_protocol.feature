@allure.label.epic:TopGun_client_protocol
@allure.label.story:TopGun_clients_stay_in_sync
Feature: TopGun clients see each other's changes, catch up after being away, and read big maps in pages
  Any TopGun client, ours or another implementation of the protocol, may connect to any
  node. Whichever node it is connected to, and whichever node owns a key, a client that
  watches a map is told when another client changes it; a client that was away loads what
  it missed when it comes back; and a map too big for one answer is read page by page.

  Background:
    Given a running cluster of 3 nodes

  @critical
  Scenario: A watcher on a node that does not own the key is told of another client's write
    Given a protocol-level client connected to a node that holds no copy of "key-1", watching map "events"
    And a cluster-mode client that knows all 3 nodes and signs in as "writer"
    When the client writes {"value": 1} to "key-1" in map "events"
    Then the write is acknowledged within 2 seconds
    And the watcher is told within 2 seconds that "key-1" in map "events" was set to {"value": 1}

  @critical
  Scenario: A client that was offline catches up through sync when it comes back
    Given a cluster-mode client that knows all 3 nodes and signs in as "writer"
    And a second client "reader" that has opened map "users" and then gone offline
    When the writer writes 40 users to map "users" and they are acknowledged
    And the writer removes "user:7" from map "users" and it is acknowledged
    And "reader" comes back online
    Then "reader" holds the 39 remaining users of map "users" locally within 5 seconds

  @critical
  Scenario: A live subscription shows another client's write, and so does the subscriber's own map
    Given a cluster-mode client that knows all 3 nodes and signs in as "writer"
    And a second client "watcher" subscribed to map "orders" where "status" is "open"
    When the writer writes {"status": "open"} to "order:1" in map "orders"
    And the writer writes {"status": "done"} to "order:2" in map "orders"
    Then the subscription of "watcher" holds exactly ["order:1"] within 2 seconds
    And "watcher" reads {"status": "open"} under "order:1" in its own map "orders" within 2 seconds

  @critical
  Scenario: A live subscription carries on when the node serving it is killed
    Given a cluster-mode client that knows all 3 nodes and signs in as "writer"
    And a second client "watcher" subscribed to map "orders" where "status" is "open"
    And the writer has written {"status": "open"} to "order:1" in map "orders"
    When the node serving the subscription of "watcher" is killed
    And the writer writes {"status": "open"} to "order:3" in map "orders" and it is acknowledged within 10 seconds
    Then the subscription of "watcher" holds exactly ["order:1", "order:3"] within 10 seconds

  @normal
  Scenario: Sync asked of any node answers for the whole map
    Given a cluster-mode client that knows all 3 nodes and signs in as "writer"
    When the writer writes 120 users to map "directory" and they are acknowledged
    Then a protocol-level sync of map "directory" on each of the 3 nodes finds all 120 records, with a root hash that sums them

  @normal
  Scenario: A big map is read page by page
    Given a cluster-mode client that knows all 3 nodes and signs in as "writer"
    When the writer writes 300 users to map "big" and they are acknowledged
    Then a protocol-level client asking map "big" for 50 rows at a time gets all 300 users in 6 pages, following the cursor
    And the writer reads all 300 users of map "big" in pages of 50
