"""The sparkgate CDK stacks."""
