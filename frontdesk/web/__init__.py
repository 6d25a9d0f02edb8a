"""Pages for doctors and operators: server-rendered with Jinja2, htmx for the live parts."""
