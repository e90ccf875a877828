"""Report sync: projects container sessions into the MySQL ``pod_report`` table."""
