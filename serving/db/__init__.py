"""All PostgreSQL access, one module per concern: connections, migrations, partitions, log rows, /stats."""
