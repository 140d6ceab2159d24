-- Customer panel: what a resource type counts. `quantity` (a number of units, shown as a
-- gauge against its limit) or `boolean` (a feature that is on or off).
ALTER TABLE resource_types ADD COLUMN kind TEXT NOT NULL DEFAULT 'quantity';
