<#
.SYNOPSIS
    Failover-cluster registration through CIM root\MSCluster: cluster.add
    (MSCluster_Cluster.AddVirtualMachine) and cluster.remove (delete the VM's cluster resources
    and resource group, found by the VM GUID in PrivateProperties.VmID).
#>

$script:AethervClusterNs = 'root\MSCluster'

function Get-AethervCluster {
    $cluster = $null
    try { $cluster = Get-CimInstance -Namespace $script:AethervClusterNs -ClassName MSCluster_Cluster -ErrorAction Stop } catch { }
    if ($null -eq $cluster) {
        Stop-Aetherv -Code 'invalid_state' -Message ('host ' + $env:COMPUTERNAME + ' is not a member of a failover cluster')
    }
    return @($cluster)[0]
}

function Add-AethervClusteredVm {
    param($Vm)
    $cluster = Get-AethervCluster
    Write-AethervLog ("MSCluster_Cluster.AddVirtualMachine '" + $Vm.Name + "' on " + $cluster.Name)
    Invoke-CimMethod -InputObject $cluster -MethodName AddVirtualMachine -Arguments @{ VirtualMachine = [string]$Vm.Name } | Out-Null
}

function Remove-AethervClusteredVm {
    param($Vm)
    $guid = ([guid]$Vm.Id).ToString()
    $config = @(Get-CimInstance -Namespace $script:AethervClusterNs -ClassName MSCluster_Resource -ErrorAction Stop |
        Where-Object { $_.Type -eq 'Virtual Machine Configuration' -and [string]$_.PrivateProperties.VmID -eq $guid })
    if ($config.Count -eq 0) { return $false }
    $group = @(Get-CimAssociatedInstance -InputObject $config[0] -ResultClassName MSCluster_ResourceGroup)
    Write-AethervLog ("Deleting cluster resources and group of '" + $Vm.Name + "'")
    if ($group.Count -gt 0) {
        $members = @(Get-CimAssociatedInstance -InputObject $group[0] -ResultClassName MSCluster_Resource)
        foreach ($r in @($members | Where-Object { $_.Type -eq 'Virtual Machine' })) { Invoke-CimMethod -InputObject $r -MethodName DeleteResource | Out-Null }
        foreach ($r in @($members | Where-Object { $_.Type -eq 'Virtual Machine Configuration' })) { Invoke-CimMethod -InputObject $r -MethodName DeleteResource | Out-Null }
        Invoke-CimMethod -InputObject $group[0] -MethodName DeleteGroup | Out-Null
    }
    else {
        Invoke-CimMethod -InputObject $config[0] -MethodName DeleteResource | Out-Null
    }
    return $true
}

function Invoke-AethervClusterAdd {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $cluster = Get-AethervCluster
    $warnings = @()
    if ($vm.IsClustered) { $warnings += ("VM '" + $vm.Name + "' is already clustered") }
    else { Add-AethervClusteredVm -Vm $vm }
    foreach ($w in $warnings) { Write-AethervLog ('WARNING: ' + $w) }
    return @{
        message = ("VM '" + $vm.Name + "' is clustered on " + $cluster.Name)
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; cluster = [string]$cluster.Name; clustered = $true; warnings = $warnings }
    }
}

function Invoke-AethervClusterRemove {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $warnings = @()
    if (-not $vm.IsClustered) { $warnings += ("VM '" + $vm.Name + "' is not clustered") }
    elseif (-not (Remove-AethervClusteredVm -Vm $vm)) { $warnings += ("no cluster resource found for VM '" + $vm.Name + "'") }
    foreach ($w in $warnings) { Write-AethervLog ('WARNING: ' + $w) }
    return @{
        message = ("VM '" + $vm.Name + "' is not clustered")
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; clustered = $false; warnings = $warnings }
    }
}
