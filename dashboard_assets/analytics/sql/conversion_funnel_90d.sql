-- One JSON value per organization: the opportunities created in its last 90
-- local days by current stage, how many reached each step of
-- new → qualified → proposal → negotiation → won, and each step's rate.
WITH stages AS (
    SELECT t.organization_id, t.today,
           COALESCE(sum(p.new_opportunities), 0) AS new,
           COALESCE(sum(p.qualified_opportunities), 0) AS qualified,
           COALESCE(sum(p.proposal_opportunities), 0) AS proposal,
           COALESCE(sum(p.negotiation_opportunities), 0) AS negotiation,
           COALESCE(sum(p.won_opportunities), 0) AS won,
           COALESCE(sum(p.lost_opportunities), 0) AS lost
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t
    LEFT JOIN dashboard.daily_pipeline p
           ON p.organization_id = t.organization_id AND p.metric_date BETWEEN t.today - 89 AND t.today
    GROUP BY t.organization_id, t.today
),
reached AS (
    SELECT *,
           new + qualified + proposal + negotiation + won + lost AS reached_new,
           qualified + proposal + negotiation + won AS reached_qualified,
           proposal + negotiation + won AS reached_proposal,
           negotiation + won AS reached_negotiation,
           won AS reached_won
    FROM stages
)
SELECT organization_id,
       jsonb_build_object(
           'organization_id', organization_id,
           'date_from', today - 89,
           'date_to', today,
           'stages', jsonb_build_object('new', new, 'qualified', qualified, 'proposal', proposal,
                                        'negotiation', negotiation, 'won', won, 'lost', lost),
           'reached', jsonb_build_object('new', reached_new, 'qualified', reached_qualified,
                                         'proposal', reached_proposal, 'negotiation', reached_negotiation,
                                         'won', reached_won),
           'conversion', jsonb_build_array(
               jsonb_build_object('from', 'new', 'to', 'qualified',
                                  'rate', round(reached_qualified::numeric / NULLIF(reached_new, 0), 4)),
               jsonb_build_object('from', 'qualified', 'to', 'proposal',
                                  'rate', round(reached_proposal::numeric / NULLIF(reached_qualified, 0), 4)),
               jsonb_build_object('from', 'proposal', 'to', 'negotiation',
                                  'rate', round(reached_negotiation::numeric / NULLIF(reached_proposal, 0), 4)),
               jsonb_build_object('from', 'negotiation', 'to', 'won',
                                  'rate', round(reached_won::numeric / NULLIF(reached_negotiation, 0), 4))),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM reached
