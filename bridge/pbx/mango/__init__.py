"""Mango Office VPBX adapter: signing, parsing, receiver, command client and simulator."""
