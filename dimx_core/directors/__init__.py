"""Director LoRAs: read every real file format, attach them as named adapters, schedule them per step."""
