-- Issue 8 with audit M1: a care worker on an active work order sees the visit address
-- through the same audited reveal as the desk. The order is the reason, kept as a column
-- so a supervisor can tie every such reveal to the visit it was for.
ALTER TABLE reveals ADD COLUMN work_order_id uuid REFERENCES work_orders(id);
