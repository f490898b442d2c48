"""The torch side: member networks, the one training loop, strategies, export and publishing."""
