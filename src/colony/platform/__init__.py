"""The platform: the one place for runtime, storage, messaging, web and logging concerns.

Every service uses these modules; none of them knows about any service.
"""
