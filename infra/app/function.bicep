// The Function app on Flex Consumption (FC1), signed in everywhere as one user-assigned identity.
// Flex Consumption takes the language and version from functionAppConfig.runtime, not from
// FUNCTIONS_WORKER_RUNTIME, and no setting below carries a key.
@description('Function app name (globally unique host name).')
param name string

@description('Region.')
param location string

@description('Resource id of the app\'s user-assigned identity.')
param identityId string

@description('Client id of the app\'s user-assigned identity.')
param identityClientId string

@description('Host storage account name (AzureWebJobsStorage__accountName).')
param hostStorageAccountName string

@description('Lake storage account name (LAKE_STORAGE__accountName).')
param lakeStorageAccountName string

@description('Blob container URL the deployment package is uploaded to, on host storage.')
param deploymentContainerUrl string

@description('Application Insights connection string: where telemetry goes (it carries no credential; ingestion is Entra ID only).')
param applicationInsightsConnectionString string

@description('Memory of one instance in MB; INSTANCE_MEMORY_MB is set from it.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.13'

@description('Make the plan zone-redundant (the region must support it for Flex Consumption, and host storage must be ZRS).')
param zoneRedundant bool = true

@description('Pipeline settings the code reads (shared/settings.py SETTING_NAMES, less the connection settings).')
param appSettings object

@description('Tags for every resource.')
param tags object = {}

// Identity-based connections (shared/settings.py IDENTITY_SETTINGS): the host, the Durable
// extension and Settings.from_env all read <NAME>__accountName/credential/clientId.
var identitySettings = {
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  LAKE_STORAGE__accountName: lakeStorageAccountName
  LAKE_STORAGE__credential: 'managedidentity'
  LAKE_STORAGE__clientId: identityClientId
}

var telemetrySettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  // Entra ID ingestion for the host and for the worker's exporter: azure-monitor-opentelemetry
  // builds a ManagedIdentityCredential for this client id from the same setting.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker configures azure-monitor-opentelemetry itself and exports the app's
  // OpenTelemetry logs, spans and custom events (shared/telemetry_names.py).
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
}

// Read by libraries from the worker's start, not by the code (shared/settings.py PROCESS_ENVIRONMENT).
var processEnvironment = {
  _RJEM_MALLOC_CONF: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0'
  NUMBA_CACHE_DIR: '/tmp/tributary-numba'
  // The worker's exporter collects the pipeline's own loggers and keeps every span (see Telemetry in README.md).
  PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME: 'shared'
  OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
  OTEL_TRACES_SAMPLER_ARG: '1.0'
}

var settings = union(appSettings, identitySettings, telemetrySettings, processEnvironment)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no fixed worker count (siteConfig.numberOfWorkers does not apply): instances scale per function from zero, up to maximumInstanceCount
  // checkov:skip=CKV_AZURE_213: the platform starts and stops Flex Consumption instances per function; App Service health-check eviction works on a fixed pool of workers, which this plan does not have
  // checkov:skip=CKV_AZURE_17: Event Grid (AzureFunction endpoint) and the Durable HTTP API call the app with function keys and present no client certificate; requiring one would refuse every event
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the app's public endpoint (it cannot deliver to a private endpoint), so public network access stays enabled; every HTTP function needs a key
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'app' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(settings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: { name: 'python', version: pythonVersion }
    }
  }
}

resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

output id string = site.id
output AZURE_FUNCTION_APP_NAME string = site.name
output hostName string = site.properties.defaultHostName
