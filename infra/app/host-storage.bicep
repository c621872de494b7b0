// The Functions host's account (AzureWebJobsStorage): the deployment package, the batch-state
// and operations tables, and the Durable task hub. Entra ID only.
//
// The Durable extension creates its task hub on first start, named after DURABLE_HUB_NAME:
// control and work-item queues, History and Instances tables, lease and large-message
// containers. Its names are the extension's, so they are not declared here; the app's
// identity creates them with the data roles rbac.bicep grants on this account.
@description('Storage account name: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param accountName string

@description('Region.')
param location string

// Not named 'sku': checkov resolves a parameter by its name across every file it scans.
@description('Replication: geo-zone-redundant by default; a zone-redundant Flex Consumption plan needs zone-redundant host storage.')
@allowed(['Standard_GZRS', 'Standard_RAGZRS', 'Standard_GRS', 'Standard_RAGRS'])
param replication string = 'Standard_GZRS'

@description('Container the deployment package is uploaded to (Flex Consumption deployment storage).')
param deploymentContainer string

@description('Azure Table holding one entity per batch (BATCH_STATE_TABLE).')
param batchStateTable string

@description('Azure Table of orchestration start claims and maintenance records (OPERATIONS_TABLE).')
param operationsTable string

@description('Tags for every resource.')
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is the accountName parameter (main.bicep derives it with take('st…', 24) from lowercase letters and uniqueString digits); checkov reads the parameter's identifier, not its value
  // checkov:skip=CKV_AZURE_35: the Function (Flex Consumption without VNet integration here) reaches its host storage over the public endpoint; access is Entra ID only (allowSharedKeyAccess false), and a deny-by-default firewall needs the VNet integration and private endpoints this template leaves out
  // checkov:skip=CKV_AZURE_59: public network access stays enabled for the same reason: the Function has no private endpoint to its host storage in this template; every request still needs an Entra ID token and a data role
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: replication }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in [batchStateTable, operationsTable]: {
    parent: tableService
    name: table
  }
]

output id string = account.id
output AzureWebJobsStorage__accountName string = account.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainer}'
output BATCH_STATE_TABLE string = batchStateTable
output OPERATIONS_TABLE string = operationsTable
