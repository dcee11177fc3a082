"""The test bed, shipped but never imported by the product: the Graph emulator, the Samba sandbox."""
