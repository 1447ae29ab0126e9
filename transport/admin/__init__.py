"""The admin endpoint: Spectrum 2's query commands on an authenticated socket (see ``docs/admin.md``)."""
