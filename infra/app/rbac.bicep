// Every role assignment, each the narrowest data-plane role at the narrowest scope that works.
// No account-management role (Storage Account Contributor, Owner), no account keys, no SAS: every
// principal below signs in with Entra ID.
@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Lake storage account name.')
param lakeStorageAccountName string

@description('Container Capture writes to, on the lake.')
param captureContainer string

@description('Container Event Grid dead-letters to, on the lake.')
param deadLetterContainer string

@description('Host storage account name.')
param hostStorageAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Event Hubs namespace name.')
param eventHubNamespaceName string

@description('Event hub name.')
param eventHubName string

@description('Principal Event Hubs Capture writes with (the namespace\'s system-assigned identity).')
param capturePrincipalId string

@description('Principal of the lake system topic\'s identity, which dead-letters.')
param systemTopicPrincipalId string

@description('Principal id allowed to send to the event hub (the producer); empty for none.')
param producerPrincipalId string = ''

@description('Type of the producer principal.')
@allowed(['ServicePrincipal', 'User', 'Group'])
param producerPrincipalType string = 'ServicePrincipal'

@description('Databricks workspace name.')
param databricksWorkspaceName string

@description('Principal of the Databricks access connector the clusters reach the lake with.')
param databricksConnectorPrincipalId string

@description('Give the app identity Contributor on the Databricks workspace, which Databricks maps to workspace admin (see below). Off: a workspace admin grants the app its entitlements instead.')
param databricksWorkspaceAdmin bool = false

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975' // Azure Event Hubs Data Sender
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c' // Contributor (Databricks workspace admin only; see below)
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeStorageAccountName
}

resource lakeBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: lake
  name: 'default'
}

resource captureBlobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: lakeBlobs
  name: captureContainer
}

resource deadLetterBlobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: lakeBlobs
  name: deadLetterContainer
}

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: namespace
  name: eventHubName
}

resource workspace 'Microsoft.Databricks/workspaces@2024-05-01' existing = {
  name: databricksWorkspaceName
}

// -- the app's identity -------------------------------------------------------------------------
// The lake: reads Capture files, writes the Delta tables, renames bad files into quarantine
// (Contributor's data actions), plus the POSIX ACL management of its paths that Owner adds.
resource appLake 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: lake
  name: guid(lake.id, appPrincipalId, roles.storageBlobDataOwner)
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

// Host storage: the Functions host and the Durable task hub (queues, tables, blobs), the batch
// state and operations tables, the deployment package.
resource appHost 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.storageBlobDataContributor, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
    scope: host
    name: guid(host.id, appPrincipalId, role)
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

// Telemetry into an Application Insights resource that refuses instrumentation-key ingestion.
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: insights
  name: guid(insights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Databricks. Azure RBAC reaches a workspace only through the control plane: Owner or Contributor
// on the workspace resource makes a service principal a workspace ADMIN the first time it calls the
// workspace with, besides its Entra token, a management token (X-Databricks-Azure-SP-Management-Token)
// and the workspace's resource id (X-Databricks-Azure-Workspace-Resource-Id; main.bicep outputs it as
// DATABRICKS_AZURE_RESOURCE_ID). No Azure role grants anything narrower inside the workspace:
// entitlements, cluster-policy, instance-pool and folder permissions and Unity Catalog privileges are
// workspace-side grants. So the least-privilege path (the default) assigns nothing here, and a
// workspace admin adds the app's identity as a service principal by its client id with the grants
// infra/README.md lists. The switch is for a throwaway workspace.
resource appDatabricksAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (databricksWorkspaceAdmin) {
  scope: workspace
  name: guid(workspace.id, appPrincipalId, roles.contributor)
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.contributor)
    description: 'Databricks workspace admin for the Tributary app (databricksWorkspaceAdmin=true)'
  }
}

// -- the other services' identities -------------------------------------------------------------
// Capture writes Avro files into its container only.
resource captureWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: captureBlobs
  name: guid(captureBlobs.id, capturePrincipalId, roles.storageBlobDataContributor)
  properties: {
    principalId: capturePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// Event Grid writes undeliverable events into the dead-letter container only.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: deadLetterBlobs
  name: guid(deadLetterBlobs.id, systemTopicPrincipalId, roles.storageBlobDataContributor)
  properties: {
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// Databricks clusters read Capture files and write the Delta tables through Unity Catalog, whose
// storage credential is the access connector's identity.
resource databricksLake 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: lake
  name: guid(lake.id, databricksConnectorPrincipalId, roles.storageBlobDataContributor)
  properties: {
    principalId: databricksConnectorPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// The producer sends to this hub only (and cannot read it back).
resource producer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(producerPrincipalId)) {
  scope: hub
  name: guid(hub.id, producerPrincipalId, roles.eventHubsDataSender)
  properties: {
    principalId: producerPrincipalId
    principalType: producerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
  }
}
