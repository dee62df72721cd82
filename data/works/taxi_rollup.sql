-- A SPARK_SQL work over the sample CSV (README, "First ten minutes"). ${csv} and ${min_fare} come from
-- the work's extra_params: -Dcsv=<path of the CSV> -Dmin_fare=<dollars>.
CREATE OR REPLACE TEMPORARY VIEW trips USING csv OPTIONS (path '${csv}', header 'true', inferSchema 'true');
SELECT VendorID, COUNT(*) AS trips, ROUND(AVG(fare_amount), 2) AS avg_fare
FROM trips
WHERE fare_amount >= ${min_fare}
GROUP BY VendorID
ORDER BY VendorID;
