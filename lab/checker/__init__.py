"""The checker: runs every attack against every protection and computes, from evidence, who won."""
