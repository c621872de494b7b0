// The app's user-assigned managed identity: one principal for host storage, the lake, Application
// Insights and Databricks, created before the app so its roles can be granted first.
@description('Identity name.')
param name string

@description('Region.')
param location string

@description('Tags for every resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
@description('Feeds AzureWebJobsStorage__clientId, LAKE_STORAGE__clientId, DATABRICKS_CLIENT_ID and APPLICATIONINSIGHTS_AUTHENTICATION_STRING.')
output clientId string = identity.properties.clientId
