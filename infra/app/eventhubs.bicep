// Event Hubs: the namespace and hub producers send to, with Capture writing Avro files into the
// lake's capture container. Capture signs in with the namespace's managed identity; the
// namespace accepts Entra ID only (no SAS keys).
@description('Namespace name (6-50 letters, digits and hyphens).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Event hub name.')
param hubName string

@description('Region.')
param location string

@description('Partitions of the hub; fixed once created on the Standard tier.')
@minValue(1)
@maxValue(32)
param partitionCount int

@description('Days events stay readable in the hub (Standard: 1-7).')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 1

@description('Capture window in seconds: a file is written at least this often per partition with events.')
@minValue(60)
@maxValue(900)
param captureIntervalSeconds int

@description('Capture size window in bytes: a file is cut when it reaches this size.')
@minValue(10485760)
@maxValue(524288000)
param captureSizeLimitBytes int

@description('Resource id of the lake storage account Capture writes to.')
param lakeAccountId string

@description('Container Capture writes to.')
param captureContainer string

@description('Resource id of the Log Analytics workspace diagnostics go to.')
param workspaceId string

@description('Throughput units of the Standard namespace.')
@minValue(1)
@maxValue(40)
param capacity int = 1

@description('Tags for every resource.')
param tags object = {}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  // Capture needs Standard or above.
  sku: { name: 'Standard', tier: 'Standard', capacity: capacity }
  identity: { type: 'SystemAssigned' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    zoneRedundant: true
    isAutoInflateEnabled: false
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
    captureDescription: {
      enabled: true
      encoding: 'Avro'
      intervalInSeconds: captureIntervalSeconds
      sizeLimitInBytes: captureSizeLimitBytes
      // Capture writes no file for a window without events.
      skipEmptyArchives: true
      destination: {
        name: 'EventHubArchive.AzureBlockBlob'
        identity: { type: 'SystemAssigned' }
        properties: {
          storageAccountResourceId: lakeAccountId
          blobContainer: captureContainer
          // The service's default; CAPTURE_URI's prefix and the Event Grid filter assume it.
          archiveNameFormat: '{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}'
        }
      }
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: namespace
  name: 'to-log-analytics'
  properties: {
    workspaceId: workspaceId
    // CapturedMessages (AzureMetrics) tells the stalled-pipeline alert that Capture is writing;
    // ArchiveLogs say why Capture could not write a window.
    metrics: [{ category: 'AllMetrics', enabled: true }]
    logs: [{ categoryGroup: 'allLogs', enabled: true }]
  }
}

output namespaceName string = namespace.name
output hubId string = hub.id
@description('Principal Capture writes with: needs Storage Blob Data Contributor on the capture container.')
output capturePrincipalId string = namespace.identity.principalId
@description('What a producer connects to (fully qualified namespace) with an Entra ID credential.')
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = '${namespace.name}.servicebus.windows.net'
output EVENTHUB_NAME string = hub.name
