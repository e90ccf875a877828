"""Database layer: models, engine/session factory, dialect-aware upserts."""
