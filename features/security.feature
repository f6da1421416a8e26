@allure.label.epic:Security
@allure.label.story:Permissions_authentication_and_hostile_input
Feature: Security: who may do what, and hostile input changes nothing
  A node lets a signed-in user act on a map only when a policy grants the user's role that
  action on that map; administrators may do everything. A token must name its user and be
  signed properly; a connection must sign in within its time limit whatever it sends; and a
  write with a malformed field is refused on its own, leaving the stored record as it was.

  @critical
  Scenario Outline: Under a policy, when <user> (role <role>) tries to <action> map "<map>", the node <verdict> it
    Given a running single node with the policy
      | role  | maps           | actions   |
      | USER  | catalog        | READ      |
      | USER  | notes-{userId} | ALL       |
      | CLERK | orders-*       | READ, PUT |
    And an administrator has stored {"v": "original"} under "k" in map "<map>"
    When "<user>" with role <role> tries to <action> "k" in map "<map>"
    Then the node <verdict> it
    And map "<map>" holds <afterwards> under "k"

    Examples:
      | user | role  | action | map         | verdict | afterwards           |
      | ann  | USER  | read   | catalog     | allows  | {"v": "original"}    |
      | ann  | USER  | write  | catalog     | refuses | {"v": "original"}    |
      | ann  | USER  | write  | notes-ann   | allows  | {"v": "new"}         |
      | ann  | USER  | remove | notes-ann   | allows  | nothing              |
      | ann  | USER  | read   | notes-bob   | refuses | {"v": "original"}    |
      | ann  | USER  | write  | notes-bob   | refuses | {"v": "original"}    |
      | cleo | CLERK | write  | orders-7    | allows  | {"v": "new"}         |
      | cleo | CLERK | remove | orders-7    | refuses | {"v": "original"}    |
      | cleo | CLERK | read   | catalog     | refuses | {"v": "original"}    |
      | ann  | USER  | write  | $sys/config | refuses | {"v": "original"}    |
      | root | ADMIN | write  | $sys/config | allows  | {"v": "new"}         |

  @critical
  Scenario Outline: With no policy at all, when <user> (role <role>) tries to <action>, the node <verdict> it
    Given a running single node with no policy
    And an administrator has stored {"v": "original"} under "k" in map "m"
    When "<user>" with role <role> tries to <action> "k" in map "m"
    Then the node <verdict> it
    And map "m" holds <afterwards> under "k"

    Examples:
      | user | role  | action | verdict | afterwards        |
      | ann  | USER  | read   | refuses | {"v": "original"} |
      | ann  | USER  | write  | refuses | {"v": "original"} |
      | root | ADMIN | read   | allows  | {"v": "original"} |
      | root | ADMIN | write  | allows  | {"v": "new"}      |

  @critical
  Scenario Outline: A token <kind> is refused and the node keeps serving others
    Given a running single node
    When a connection signs in with a token <kind>
    Then it is refused with an authentication failure and closed with code 4001
    And a client that signs in as "test-user" can still write {"ok": true} to "probe" in map "health"

    Examples:
      | kind                       |
      | with no claims at all      |
      | with no subject            |
      | with an empty subject      |
      | that expired a minute ago  |
      | that is not valid yet      |
      | signed with HS512          |
      | with no signature          |
      | signed by another secret   |
      | whose roles are not a list |

  @critical
  Scenario: A connection that never signs in is closed in time, even if it keeps pinging
    Given a running single node whose connections must sign in within 3 seconds
    When a connection opens, sends a PING every second and never signs in
    Then that connection is closed with code 4001 within 5 seconds
    And a client that signs in as "test-user" can still write {"ok": true} to "probe" in map "health"

  @critical
  Scenario Outline: A write whose <field> is <problem> is refused and the record stays as it was
    Given a running single node
    And an administrator has stored {"v": "original"} under "k" in map "m"
    When "test-user" sends a write of {"v": "hostile"} to "k" in map "m" whose <field> is <problem>
    Then the write is refused as an invalid op that names "<named>"
    And map "m" holds {"v": "original"} under "k"

    Examples:
      | field            | problem                | named            |
      | writeConcern     | "bogus"                | writeConcern     |
      | writeConcern     | a number               | writeConcern     |
      | orRecord         | a string               | orRecord         |
      | orTag            | a number               | orTag            |
      | opType           | "bogus"                | opType           |
      | id               | a number               | id               |
      | timeout          | a string               | timeout          |
      | synced           | a string               | synced           |
      | timestamp        | a number               | timestamp        |
      | record.ttlMs     | negative               | record.ttlMs     |
      | record.ttlMs     | a fraction             | record.ttlMs     |
      | record.ttlMs     | a string               | record.ttlMs     |
      | record.timestamp | missing                | record.timestamp |
      | record.timestamp | a string               | record.timestamp |
      | record.value     | nested 100 levels deep | record.value     |
      | record.owner     | unknown                | owner            |
      | sneaky           | unknown                | sneaky           |
