"""What the tests share: brokers and topics, running apps, the CLI as a user runs it, apps under
test. Test modules import from here, never from one another."""
