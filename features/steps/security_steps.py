"""Steps of the security feature: policies, attempts as a user, hostile tokens and fields.
The machinery is :mod:`topgun.harness.security`."""

import allure
from allure_commons.types import AttachmentType
from behave import given, then, when
from hamcrest import assert_that, contains_string, equal_to, is_, less_than, none

from topgun.core.policy import PolicySet
from topgun.harness import security
from topgun.harness.client_driver import ClientDriver

STEP_S = 5.0


def _run(context, coro, within=STEP_S):
    world = context.world
    return world.loop.run(coro, world.limit(within) + 5)


def _url(context):
    cluster = context.world.cluster
    return cluster.client_url(cluster.live_nodes()[0])


@given("a running single node with the policy")
def single_node_with_policy(context):
    rows = [dict(zip(context.table.headings, row.cells, strict=True)) for row in context.table]
    path = security.write_policy_file(context.world.scratch(), rows)
    allure.attach(path.read_text(), name="policy file", attachment_type=AttachmentType.JSON)
    context.world.start_cluster(1, policy_file=path)


@given("a running single node with no policy")
def single_node_without_policy(context):
    path = context.world.scratch() / "no-policies.json"
    path.write_text('{"policies": []}', encoding="utf-8")
    assert_that(PolicySet.from_dicts([]).policies, equal_to(()), "an empty policy file")
    context.world.start_cluster(1, policy_file=path)


@given("a running single node whose connections must sign in within {secs:Limit}")
def single_node_with_auth_timeout(context, secs):
    context.world.start_cluster(1, auth_timeout_s=context.world.limit(secs))


@given('an administrator has stored {value:Json} under "{key}" in map "{map_name}"')
def admin_stored(context, value, key, map_name):
    token = context.world.cluster.admin_token()
    done = _run(
        context,
        security.attempt(
            _url(context), token, "write", map_name=map_name, key=key, value=value, within=STEP_S
        ),
    )
    assert_that(done.allowed, is_(True), f"the administrator's write: {done.answer}")


@when('"{user}" with role {role} tries to {action} "{key}" in map "{map_name}"')
def user_tries(context, user, role, action, key, map_name):
    token = context.world.cluster.token(user, (role,))
    context.world.notes["attempt"] = done = _run(
        context,
        security.attempt(
            _url(context),
            token,
            action,
            map_name=map_name,
            key=key,
            value={"v": "new"},
            within=STEP_S,
        ),
    )
    allure.attach(repr(done.answer), name="the node's answer", attachment_type=AttachmentType.TEXT)


@then("the node {verdict} it")
def node_verdict(context, verdict):
    done = context.world.notes["attempt"]
    assert_that(done.allowed, equal_to(verdict == "allows"), f"the node answered {done.answer}")
    if verdict == "refuses":
        answer = done.answer
        text = str(answer.get("payload", {}).get("message") or answer.get("results"))
        assert_that(text, contains_string("Access Denied for map"), "the refusal says why")


@then('map "{map_name}" holds {afterwards} under "{key}"')
def map_holds(context, map_name, afterwards, key):
    import json

    cluster = context.world.cluster
    held = cluster.inspect(cluster.live_nodes()[0], map_name, key)["record"]
    value = None if held is None else held["value"]
    expected = None if afterwards == "nothing" else json.loads(afterwards)
    assert_that(value, equal_to(expected), f"what the node holds under {key!r} in {map_name!r}")


@when("a connection signs in with a token {kind}")
def sign_in_with_hostile_token(context, kind):
    token = security.hostile_token(kind, context.world.cluster.settings.jwt_secret)
    context.world.notes["sign_in"] = _run(context, security.sign_in(_url(context), token, STEP_S))


@then("it is refused with an authentication failure and closed with code {code:d}")
def refused_and_closed(context, code):
    reply, error, closed = context.world.notes["sign_in"]
    assert_that(reply, equal_to("AUTH_FAIL"), f"the answer to the token (error {error!r})")
    assert_that(closed, equal_to(code), "the close code after AUTH_FAIL")


@then(
    'a client that signs in as "{user}" can still write {value:Json} to "{key}" in map "{map_name}"'
)
def client_still_writes(context, user, value, key, map_name):
    world = context.world
    driver = world.add_client(
        ClientDriver.for_server(world.loop, _url(context), world.cluster.token(user))
    )
    driver.start(world.limit(5))
    driver.write(map_name, key, value)
    driver.flush(world.limit(5))
    held = world.cluster.inspect(world.cluster.live_nodes()[0], map_name, key)["record"]
    assert_that(held and held["value"], equal_to(value), "the bystander's write was stored")


@when("a connection opens, sends a PING every second and never signs in")
def pinging_stranger(context):
    world = context.world
    within = world.limit(15)
    world.notes["stranger"] = _run(
        context, security.pinging_stranger(_url(context), 1.0, within), 15
    )


@then("that connection is closed with code {code:d} within {secs:Limit}")
def stranger_closed(context, code, secs):
    after, closed = context.world.notes["stranger"]
    allure.attach(f"closed after {after:.2f} s with {closed}", name="the stranger's fate",
                  attachment_type=AttachmentType.TEXT)  # fmt: skip
    assert_that(closed, equal_to(code), "the close code")
    assert_that(after, less_than(context.world.limit(secs)), "seconds until it was closed")


@when(
    '"{user}" sends a write of {value:Json} to "{key}" in map "{map_name}" '
    "whose {field} is {problem}"
)
def send_bad_field(context, user, value, key, map_name, field, problem):
    op = security.op_with_bad_field("1", map_name, key, field, problem)
    token = context.world.cluster.token(user)
    result = _run(context, security.send_op(_url(context), token, op, STEP_S))
    context.world.notes["bad_op"] = result
    allure.attach(repr(result), name="the node's answer", attachment_type=AttachmentType.TEXT)


@then('the write is refused as an invalid op that names "{named}"')
def refused_as_invalid(context, named):
    result = context.world.notes["bad_op"]
    assert_that(result["success"], is_(False), f"the op's result {result}")
    assert_that(result.get("error", ""), contains_string("INVALID_OP: "), "the documented code")
    assert_that(result.get("error", ""), contains_string(named), "the refusal names the field")
    assert_that(result.get("rejected", {}).get("code"), equal_to(400), "OP_REJECTED's code")
    assert_that(result.get("hint"), none(), "no ownership hint")
