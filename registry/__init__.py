"""The registry at run time: members and their devices, gateways, sensors and org units added,
changed, moved and retired while everything runs (store.py), by the CLI (`python -m
registry.devices`, devices.py) and the admin page. The database is the registry's truth; the
broker's accounts follow it at once ($CONTROL, broker.py), and every process holding the city in
memory reads it again on the database's notification (database.citydb.CityWatch)."""
