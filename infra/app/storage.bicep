// The lake account: ADLS Gen2 (hierarchical namespace) for Capture files, Delta tables,
// quarantine, batch state (Table Storage) and the Functions host's own storage.
@description('Storage account name (3-24 lowercase letters and digits).')
param accountName string

@description('Region.')
param location string

@description('Blob containers (ADLS file systems) to create.')
param containers array

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    isHnsEnabled: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    // Settings.from_env and delta-rs still read a connection string (STORAGE_CONNECTION);
    // turn this off once the app moves to identity-based connections (X__serviceUri).
    allowSharedKeyAccess: true
    supportsHttpsTrafficOnly: true
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource created 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobs
  name: container
}]

output accountName string = account.name
output accountId string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
