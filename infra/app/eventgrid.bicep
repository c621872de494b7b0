// The lake account's Event Grid system topic, with a managed identity for dead-lettering and its
// delivery metrics and failure logs sent to Log Analytics (the dead-letter alert reads them).
// The subscription to the function is infra/eventing.bicep, deployed once the code is published.
@description('System topic name.')
param name string

@description('Region (the lake account\'s).')
param location string

@description('Resource id of the lake storage account whose events the topic publishes.')
param lakeAccountId string

@description('Resource id of the Log Analytics workspace diagnostics go to.')
param workspaceId string

@description('Tags for every resource.')
param tags object = {}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    source: lakeAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: topic
  name: 'to-log-analytics'
  properties: {
    workspaceId: workspaceId
    // DeadLetteredCount, DeliveryAttemptFailCount and MatchedEventCount land in AzureMetrics.
    metrics: [{ category: 'AllMetrics', enabled: true }]
    logs: [{ category: 'DeliveryFailures', enabled: true }]
  }
}

output EVENT_GRID_SYSTEM_TOPIC string = topic.name
@description('Principal that dead-letters: needs Storage Blob Data Contributor on the dead-letter container.')
output principalId string = topic.identity.principalId
