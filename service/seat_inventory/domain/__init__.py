"""The pure-Python core: seats, holds, bookings, ids and errors. No I/O here."""
