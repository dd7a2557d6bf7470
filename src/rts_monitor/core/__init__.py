"""The application core, below every concern: settings, errors, edition, context, scheduler, the
concern declaration."""
