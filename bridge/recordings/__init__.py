"""Recordings served by callbridge: a bounded on-disk cache of Mango's files, byte-range answers for
players, and the signed links CRMs keep (`cache`, `ranges`, `links`, `service`)."""
