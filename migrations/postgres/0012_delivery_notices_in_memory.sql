-- Delivery notices (docs/delivery-status.md) are kept in memory: they are
-- advisory, and a sync whose token predates the server's memory of them
-- reads the `deliveries` rows recorded since instead.
DROP TABLE delivery_notices;
