"""Pages people read: rendering and templates. The analytics they show come from :mod:`training`."""
