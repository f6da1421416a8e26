"""The nftables rule set a network host gets for its faults."""

from topgun.harness.netns import Host, nft_script


def test_a_healthy_host_gets_empty_chains_that_replace_any_old_ones() -> None:
    script = nft_script(Host("node-1", "tg-1-1-1", "10.77.1.11", "tg1l1v1"))
    assert script.startswith("table inet topgun\ndelete table inet topgun\n")
    assert " drop" not in script


def test_cuts_drop_by_source_coming_in_and_by_destination_going_out() -> None:
    host = Host("node-1", "tg-1-1-1", "10.77.1.11", "tg1l1v1")
    host.blocked_in.add("10.77.1.12")
    host.blocked_out.update({"10.77.1.13", "10.77.1.1"})
    host.loss_percent = 10
    script = nft_script(host)
    input_chain, output_chain = script.split(" chain output {")
    assert "ip saddr 10.77.1.12 drop" in input_chain
    assert "ip daddr" not in input_chain
    assert "ip daddr 10.77.1.1 drop" in output_chain
    assert "ip daddr 10.77.1.13 drop" in output_chain
    assert "numgen random mod 100 < 10 drop" in output_chain
