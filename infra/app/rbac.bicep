// Roles the Function app's managed identity needs on the lake account.
@description('Lake storage account.')
param storageAccountName string

@description('Principal id of the Function app identity.')
param principalId string

var roles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner: Capture files, Delta tables, quarantine, deployment package
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor: batch state, operations table, Durable history
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor: Durable control and work-item queues
  '17d1049b-9a84-46fb-8f53-869881c3d3ab' // Storage Account Contributor: Durable task hub leases/containers management
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in roles: {
  scope: storage
  name: guid(storage.id, principalId, role)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]
