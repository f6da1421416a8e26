@AC-6
Feature: Single-server mode works as before
  A client can also talk to one server by its address, with no partition map and no
  routing. Everything that worked that way before the cluster client existed still works.

  Background:
    Given a running single node

  @critical
  Scenario: A single-server client signs in, writes and reads back
    Given a single-server client that signs in as "test-user"
    When the client writes {"name": "Ada"} to "user:42" in map "users"
    Then the write is acknowledged within 2 seconds
    And the node holds {"name": "Ada"} under "user:42" in map "users"
    And reading "user:42" from map "users" on the cluster gives {"name": "Ada"} within 2 seconds
    And the client has no partition map and no cluster statistics

  @critical
  Scenario: Writes made while the server is away are sent when it comes back
    Given a single-server client that signs in as "test-user"
    And the node has been shut down
    When the client writes {"name": "Grace"} to "user:7" in map "users"
    Then the client reads {"name": "Grace"} under "user:7" in map "users" at once
    And the write is still waiting to be sent
    When the node is started again at the same address
    Then the write is acknowledged within 10 seconds
    And the node holds {"name": "Grace"} under "user:7" in map "users"

  @normal
  Scenario: A client with a bad token is refused and the server stays up for others
    When a single-server client signs in with a token signed by the wrong secret
    Then the client is refused with an authentication error within 5 seconds
    And a single-server client that signs in as "test-user" can write {"ok": true} to "probe" in map "health"
