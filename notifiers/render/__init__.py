"""Rendering of Results and Alerts to Slack Block Kit and Discord embeds/components, from shared tables and limits. May import notifiers.alert and commands.results."""
