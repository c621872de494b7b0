// Tributary: Event Hubs Capture files -> Delta lakehouse on Azure Functions (Flex Consumption).
// One module per concern; outputs are named for the app settings they feed.
targetScope = 'resourceGroup'

@description('Short name used to derive every resource name.')
@minLength(3)
@maxLength(12)
param name string

@description('Region for every resource.')
param location string = resourceGroup().location

@description('Container where Event Hubs Capture writes its Avro files.')
param captureContainer string = 'capture'

@description('Blob prefix under the capture container that holds Capture files (empty for all).')
param capturePrefix string = ''

@description('Durable Functions task hub name (DURABLE_HUB_NAME).')
param durableHubName string = 'tributary'

@description('NCRONTAB schedule of the Delta maintenance timer (MAINTENANCE_SCHEDULE).')
param maintenanceSchedule string = '0 30 2 * * *'

@description('Files above this size take the large-file route (LARGE_FILE_BYTES); 464 MiB is what make bench derives for a 2,048 MB instance.')
param largeFileBytes int = 486539264

@description('Create the Event Grid subscription; set false on the first deployment, before the code is published.')
param deployEventSubscription bool = true

var suffix = uniqueString(resourceGroup().id, name)

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    name: '${name}-${suffix}'
    location: location
  }
}

module lake 'app/storage.bicep' = {
  name: 'lake'
  params: {
    accountName: take('st${toLower(name)}${suffix}', 24)
    location: location
    containers: [captureContainer, 'lake', 'quarantine', 'deployments']
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  params: {
    name: 'func-${name}-${suffix}'
    location: location
    storageAccountName: lake.outputs.accountName
    deploymentContainerUrl: '${lake.outputs.blobEndpoint}deployments'
    applicationInsightsConnectionString: monitoring.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING
    appSettings: {
      LAKE_URI: 'az://lake'
      CAPTURE_URI: empty(capturePrefix) ? 'az://${captureContainer}' : 'az://${captureContainer}/${capturePrefix}'
      QUARANTINE_URI: 'az://quarantine'
      BATCH_STATE_TABLE: 'batches'
      STORAGE_RETRY_SECONDS: '60'
      INSTANCE_MEMORY_MB: '2048'
      DATABRICKS_HOST: ''
      DATABRICKS_CLIENT_ID: ''
      DATABRICKS_JOB_ROOT: '/Workspace/Shared/tributary'
      DATABRICKS_CLUSTER_POLICY_ID: ''
      DATABRICKS_INSTANCE_POOL_ID: ''
      DATABRICKS_SERVERLESS: 'false'
      DATABRICKS_SPARK_VERSION: '15.4.x-scala2.12'
      DATABRICKS_NODE_TYPE: 'Standard_D4ds_v5'
      DATABRICKS_WORKERS: '2'
      DATABRICKS_POLL_SECONDS: '30'
      DATABRICKS_TIMEOUT_MINUTES: '120'
      DATABRICKS_DBU_PER_HOUR: '1.5'
      LARGE_FILE_BYTES: string(largeFileBytes)
      CHUNK_ROWS: '16384'
      DELTA_COMMIT_RETRIES: '8'
      DURABLE_HUB_NAME: durableHubName
      OPERATIONS_TABLE: 'operations'
      BACKFILL_CONCURRENCY: '8'
      MAINTENANCE_SCHEDULE: maintenanceSchedule
      VACUUM_RETENTION_HOURS: '168'
      // Read by libraries, not by the code: see PROCESS_ENVIRONMENT in shared/settings.py.
      _RJEM_MALLOC_CONF: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0'
      NUMBA_CACHE_DIR: '/tmp/tributary-numba'
    }
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: lake.outputs.accountName
    principalId: function.outputs.principalId
  }
}

module eventing 'app/eventgrid.bicep' = if (deployEventSubscription) {
  name: 'eventing'
  params: {
    name: 'evgt-${name}-${suffix}'
    location: location
    storageAccountName: lake.outputs.accountName
    functionAppName: function.outputs.name
    functionName: 'on_capture_event'
    captureContainer: captureContainer
    capturePrefix: capturePrefix
  }
}

output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output STORAGE_ACCOUNT_NAME string = lake.outputs.accountName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING
