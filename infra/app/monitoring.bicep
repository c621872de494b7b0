// Log Analytics, workspace-based Application Insights (Entra ID ingestion only), the alerts an
// operator needs and the workbook that shows the pipeline. The queries live in
// infra/monitoring/: alerts/*.kql run on the workspace, queries/*.kql (and the workbook) on
// Application Insights; both use only the names in shared/telemetry_names.py.
@description('Base name of the resources.')
param name string

@description('Region.')
param location string

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Alert when more than this percent of the rows of the batches finished in the last hour were quarantined.')
@minValue(1)
@maxValue(100)
param quarantineRatioThresholdPercent int

@description('Alert when Capture wrote events but no batch finished for this many minutes.')
@minValue(30)
@maxValue(1440)
param noBatchWindowMinutes int

@description('E-mail address the alerts notify; empty for none (alerts still show in the portal).')
param alertEmail string = ''

@description('Tags for every resource.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: retentionInDays
    features: { disableLocalAuth: true }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // Telemetry is accepted only with an Entra ID token (Monitoring Metrics Publisher).
    DisableLocalAuth: true
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    enabled: true
    groupShortName: 'tributary'
    emailReceivers: [{ name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

// Each alert: its query, how often it runs over what window, and what result fires it.
// Count fires when the query returns more rows than the threshold; a measure fires when its
// column's value passes the threshold.
var alerts = [
  {
    name: 'batch-failed'
    displayName: 'Tributary: a batch failed'
    description: 'A batch reached FAILED. The failures query (infra/monitoring/queries/failures.kql) gives the layer and the reason; replay it with POST /api/batches/{id}/replay once fixed.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT5M'
    criterion: {
      query: loadTextContent('../monitoring/alerts/batch-failed.kql')
      timeAggregation: 'Count'
      operator: 'GreaterThan'
      threshold: 0
    }
    autoMitigate: false
  }
  {
    name: 'quarantine-ratio'
    displayName: 'Tributary: quarantine ratio above ${quarantineRatioThresholdPercent}%'
    description: 'More than ${quarantineRatioThresholdPercent}% of the rows of the batches finished in the last hour were quarantined: the producer or the contract changed. See quarantine-by-expectation.kql.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    criterion: {
      query: loadTextContent('../monitoring/alerts/quarantine-ratio.kql')
      timeAggregation: 'Maximum'
      metricMeasureColumn: 'quarantine_percent'
      operator: 'GreaterThan'
      threshold: quarantineRatioThresholdPercent
    }
    autoMitigate: true
  }
  {
    name: 'events-dead-lettered'
    displayName: 'Tributary: Event Grid dead-lettered events'
    description: 'Event Grid gave up delivering Capture events to the function; they are in the dead-letter container. Fix the function, then start their batches with POST /api/backfill.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    criterion: {
      query: loadTextContent('../monitoring/alerts/dead-lettered.kql')
      timeAggregation: 'Maximum'
      metricMeasureColumn: 'dead_lettered'
      operator: 'GreaterThan'
      threshold: 0
    }
    autoMitigate: true
  }
  {
    name: 'databricks-run-failed'
    displayName: 'Tributary: a Databricks run failed'
    description: 'A large-file step failed on Databricks. databricks-runs.kql lists the runs with their pages.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT5M'
    criterion: {
      query: loadTextContent('../monitoring/alerts/databricks-run-failed.kql')
      timeAggregation: 'Count'
      operator: 'GreaterThan'
      threshold: 0
    }
    autoMitigate: false
  }
  {
    name: 'no-batch-while-capturing'
    displayName: 'Tributary: no batch finished in ${noBatchWindowMinutes} minutes while Capture writes files'
    description: 'Capture kept writing files but no batch finished: check the Event Grid subscription, the function app and the Durable task hub.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT${noBatchWindowMinutes}M'
    criterion: {
      query: loadTextContent('../monitoring/alerts/no-batch-while-capturing.kql')
      timeAggregation: 'Count'
      operator: 'GreaterThan'
      threshold: 0
    }
    autoMitigate: true
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for alert in alerts: {
    name: 'alert-${name}-${alert.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: alert.displayName
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [workspace.id]
      evaluationFrequency: alert.frequency
      windowSize: alert.window
      autoMitigate: alert.autoMitigate
      // One evaluation window past the threshold fires the alert.
      criteria: { allOf: [union(alert.criterion, { failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 } })] }
      actions: { actionGroups: empty(alertEmail) ? [] : [actionGroup.id] }
    }
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, name, 'tributary-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Tributary pipeline'
    category: 'workbook'
    sourceId: insights.id
    serializedData: loadTextContent('../monitoring/workbook.json')
  }
}

output workspaceId string = workspace.id
output applicationInsightsName string = insights.name
output APPLICATIONINSIGHTS_CONNECTION_STRING string = insights.properties.ConnectionString
