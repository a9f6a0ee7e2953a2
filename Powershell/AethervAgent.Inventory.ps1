<#
.SYNOPSIS
    host.inventory: host capacity, cluster membership, host resources and every VM.
#>

function Invoke-AethervHostInventory {
    param([hashtable]$Spec)
    Write-AethervLog 'Collecting host resources and virtual machines'
    $res = Get-AethervHostResources
    $cs = Get-CimInstance -ClassName Win32_ComputerSystem
    $cores = 0
    foreach ($p in @(Get-CimInstance -ClassName Win32_Processor)) { $cores += [int]$p.NumberOfLogicalProcessors }
    $totalGb = [long][math]::Floor($cs.TotalPhysicalMemory / $script:AethervGiB)
    $cluster = $null
    try {
        $node = Get-ClusterNode -Name $env:COMPUTERNAME -ErrorAction Stop
        if ($node -and $node.Cluster) { $cluster = [string]$node.Cluster.Name }
    }
    catch { }
    $vms = @()
    $assigned = 0
    $inUse = 0
    foreach ($vm in @(Get-VM)) {
        $view = Get-AethervVmView -Vm $vm
        $vms += , $view
        $assigned += $view['memory_gb']
        if (@('Running', 'Paused') -contains $view['state']) { $inUse += $view['memory_gb'] }
    }
    Write-AethervLog ('Found ' + $vms.Count + ' virtual machine(s)')
    $classes = @()
    foreach ($c in @($res['storage_classes'])) {
        if ($null -eq $c) { continue }
        $free = $null
        $capacity = $null
        try {
            $vol = Get-Volume -FilePath ([string]$c['path']) -ErrorAction Stop
            $capacity = [long][math]::Floor($vol.Size / $script:AethervGiB)
            $free = [long][math]::Floor($vol.SizeRemaining / $script:AethervGiB)
        }
        catch { }
        $classes += , ([ordered]@{ name = $c['name']; path = $c['path']; capacity_gb = $capacity; free_gb = $free })
    }
    $hostView = [ordered]@{
        computer_name         = $env:COMPUTERNAME.ToLowerInvariant()
        cluster_name          = $cluster
        total_cpu_cores       = $cores
        total_memory_gb       = $totalGb
        memory_assigned_gb    = $assigned
        memory_in_use_gb      = $inUse
        available_memory_gb   = [math]::Max(0, $totalGb - $assigned)
        version               = $script:AethervVersion
        schema_name           = 'hostresources'
        virtual_machines_path = $res['virtual_machines_path']
        storage_classes       = $classes
        networks              = @($res['networks'])
        images                = @($res['images'])
    }
    return @{ message = 'Inventory collected'; data = @{ host = $hostView; vms = $vms } }
}
