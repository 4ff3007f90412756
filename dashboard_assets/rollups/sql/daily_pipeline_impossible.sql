-- Rows of the refreshed range (and organizations) that no source data can produce: negative
-- counts, or a win rate (won_count / closed_opportunities) outside 0..1.
SELECT organization_id, metric_date
FROM dashboard.daily_pipeline
WHERE metric_date BETWEEN %(start_date)s AND %(end_date)s
  AND (%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))
  AND (LEAST(new_opportunities, qualified_opportunities, proposal_opportunities,
             negotiation_opportunities, won_opportunities, lost_opportunities,
             closed_opportunities, won_count) < 0
       OR won_count > closed_opportunities
       OR closed_opportunities <> won_opportunities + lost_opportunities)
