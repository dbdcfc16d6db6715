"""The DNS target contract: one suite (dns_contract.DnsTargetContract) run against every target."""
