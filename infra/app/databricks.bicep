// The Databricks workspace large files run on, and the access connector its clusters read and
// write the lake with (shared keys are off, so Spark signs in to storage with Entra ID too).
//
// The Function reaches the workspace with Entra ID tokens for its user-assigned identity
// (DATABRICKS_HOST + DATABRICKS_CLIENT_ID; databricks-sdk's azure-msi auth): no personal access
// token exists, so none is stored and no Key Vault is needed. What Azure RBAC can and cannot
// grant inside the workspace is written out in rbac.bicep, beside the one optional assignment.
@description('Workspace name.')
param name string

@description('Region.')
param location string

@description('Pricing tier; premium is needed for Unity Catalog, cluster policies and job permissions.')
@allowed(['premium', 'standard'])
param pricingTier string = 'premium'

@description('Tags for every resource.')
param tags object = {}

// Databricks creates and locks this resource group for the workspace's own resources.
var managedResourceGroupName = 'databricks-rg-${name}-${uniqueString(name, resourceGroup().id)}'

resource workspace 'Microsoft.Databricks/workspaces@2024-05-01' = {
  // checkov:skip=CKV_AZURE_158: the Function calls the workspace API over the public endpoint (no VNet integration in this template) with Entra ID tokens; private link needs VNet injection and private endpoints, which this template leaves out. Clusters still get no public IPs
  // checkov:skip=CKV2_AZURE_48: DBFS root holds only the workspace's own files (libraries, logs), encrypted with Microsoft-managed keys; the pipeline's data is in the lake, read through Unity Catalog, never in DBFS root
  name: name
  location: location
  tags: tags
  sku: { name: pricingTier }
  properties: {
    managedResourceGroupId: subscriptionResourceId('Microsoft.Resources/resourceGroups', managedResourceGroupName)
    // Cluster nodes get no public IP addresses (secure cluster connectivity).
    parameters: {
      enableNoPublicIp: { value: true }
    }
    publicNetworkAccess: 'Enabled'
  }
}

// Unity Catalog's storage credential is this connector's identity: rbac.bicep grants it the lake,
// and a workspace admin registers it once (README: "Databricks, the workspace side").
resource connector 'Microsoft.Databricks/accessConnectors@2024-05-01' = {
  name: '${name}-lake'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {}
}

output id string = workspace.id
output name string = workspace.name
output DATABRICKS_HOST string = 'https://${workspace.properties.workspaceUrl}'
output accessConnectorId string = connector.id
@description('Principal the clusters use for the lake: needs Storage Blob Data Contributor on it.')
output accessConnectorPrincipalId string = connector.identity.principalId
