-- The trace the order's checkout ran in (a W3C traceparent), so the courier's later steps,
-- each a trace of its own, link back to it.
ALTER TABLE shipments ADD COLUMN trace_context TEXT;
