<#
.SYNOPSIS
    VM operations: vm.create, vm.get, vm.update, vm.delete, vm.power.
#>

function Get-AethervHostLimits {
    $cs = Get-CimInstance -ClassName Win32_ComputerSystem
    $cores = 0
    foreach ($p in @(Get-CimInstance -ClassName Win32_Processor)) { $cores += [int]$p.NumberOfLogicalProcessors }
    return @{ memory_gb = [long][math]::Floor($cs.TotalPhysicalMemory / $script:AethervGiB); cores = $cores }
}

function Invoke-AethervVmCreate {
    param([hashtable]$Spec)
    $name = Get-AethervRequiredString -Spec $Spec -Key 'vm_name'
    # Refused even when the caller skipped validation: the name becomes the VM's folder.
    Assert-AethervPathName -Name $name -What 'vm_name'
    $existing = @(Get-VM -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $name })
    if ($existing.Count -gt 0) {
        Stop-Aetherv -Code 'name_conflict' -Message ("A virtual machine named '" + $existing[0].Name + "' already exists on " + $env:COMPUTERNAME + " (id " + $existing[0].Id + ").")
    }
    $limits = Get-AethervHostLimits
    $memory = Get-AethervUInt -Spec $Spec -Keys @('gb_ram', 'memory_gb')
    if ($null -eq $memory) { $memory = 2 }
    $cpu = Get-AethervUInt -Spec $Spec -Keys @('cpu_cores', 'cpu')
    if ($null -eq $cpu) { $cpu = 1 }
    if ($memory -lt 1 -or $memory -gt $limits.memory_gb) {
        Stop-Aetherv -Code 'invalid_argument' -Message ('memory ' + $memory + ' GB is outside 1..' + $limits.memory_gb + ' GB')
    }
    if ($cpu -lt 1 -or $cpu -gt $limits.cores) {
        Stop-Aetherv -Code 'invalid_argument' -Message ('processor count ' + $cpu + ' is outside 1..' + $limits.cores + ' (logical processors of the host)')
    }
    $res = Get-AethervHostResources
    $classes = @($res['storage_classes'] | Where-Object { $null -ne $_ })
    $className = Get-AethervString -Spec $Spec -Key 'storage_class'
    if ($null -ne $className) {
        $class = @($classes | Where-Object { [string]$_['name'] -eq $className })
        if ($class.Count -eq 0) { Stop-Aetherv -Code 'not_found' -Message ("storage class '" + $className + "' is not defined on " + $env:COMPUTERNAME) }
        $class = $class[0]
    }
    else {
        if ($classes.Count -eq 0) { Stop-Aetherv -Code 'not_found' -Message 'the host defines no storage class' }
        $class = $classes[0]
    }
    $os = Get-AethervString -Spec $Spec -Key 'os_family'
    if ($null -eq $os) { $os = 'windows' }
    $os = $os.ToLowerInvariant()
    if (@('windows', 'linux') -notcontains $os) {
        Stop-Aetherv -Code 'invalid_argument' -Message ("os_family '" + $os + "' is not windows or linux")
    }
    $clustered = Get-AethervBool -Spec $Spec -Key 'vm_clustered'
    $notes = Get-AethervString -Spec $Spec -Key 'notes'
    $base = ([string]$class['path']).TrimEnd('\')
    $path = Join-AethervChildPath -Root $base -Name $name -What 'vm_name'
    Write-AethervLog ("Creating VM '" + $name + "' with " + $memory + " GB memory and " + $cpu + " vCPU in " + $path)
    $vm = New-VM -Name $name -MemoryStartupBytes ([long]$memory * $script:AethervGiB) -Generation 2 -Path $base -NoVHD
    try {
        Set-VMProcessor -VM $vm -Count $cpu
        if ($os -eq 'linux') {
            Write-AethervLog 'Setting secure boot template MicrosoftUEFICertificateAuthority'
            Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplate 'MicrosoftUEFICertificateAuthority'
        }
        Get-VMNetworkAdapter -VM $vm | Remove-VMNetworkAdapter
        if ($null -ne $notes) { Set-VM -VM $vm -Notes $notes }
        $isClustered = $false
        if ($clustered) {
            Add-AethervClusteredVm -Vm $vm
            $isClustered = $true
        }
    }
    catch {
        Write-AethervLog ('WARNING: configuring the new VM failed; removing it: ' + $_.Exception.Message)
        Remove-VM -VM $vm -Force -ErrorAction SilentlyContinue
        throw
    }
    Write-AethervLog ("VM '" + $name + "' created with id " + $vm.Id)
    return @{
        message = ("VM '" + $name + "' created")
        data    = [ordered]@{
            vm_id = [string]$vm.Id; vm_name = $name; status = 'created'; state = 'Off'
            path = [string]$vm.Path; storage_class = [string]$class['name']; clustered = $isClustered
        }
    }
}

function Invoke-AethervVmGet {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    Write-AethervLog ("Found VM '" + $vm.Name + "' (" + $vm.State + ")")
    return @{ message = ("VM '" + $vm.Name + "' found"); data = (Get-AethervVmView -Vm $vm) }
}

function Invoke-AethervVmUpdate {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $limits = Get-AethervHostLimits
    $cpu = Get-AethervUInt -Spec $Spec -Keys @('cpu_cores', 'cpu')
    $memory = Get-AethervUInt -Spec $Spec -Keys @('gb_ram', 'memory_gb')
    $dynamic = Get-AethervBool -Spec $Spec -Key 'dynamic_memory'
    $secureBoot = Get-AethervBool -Spec $Spec -Key 'secure_boot'
    $tpm = Get-AethervBool -Spec $Spec -Key 'tpm'
    $running = ([string]$vm.State -ne 'Off')
    $applied = @()
    $warnings = @()
    if ($null -ne $cpu) {
        if ($cpu -lt 1 -or $cpu -gt $limits.cores) {
            Stop-Aetherv -Code 'invalid_argument' -Message ('processor count ' + $cpu + ' is outside 1..' + $limits.cores)
        }
        if ($cpu -ne $vm.ProcessorCount) {
            if ($running) { Stop-Aetherv -Code 'invalid_state' -Message ("Cannot change the processor count of VM '" + $vm.Name + "' while it is " + $vm.State + ".") }
            Write-AethervLog ('Set-VMProcessor -Count ' + $cpu)
            Set-VMProcessor -VM $vm -Count $cpu
            $applied += 'cpu_cores'
        }
    }
    if ($null -ne $memory) {
        if ($memory -lt 1 -or $memory -gt $limits.memory_gb) {
            Stop-Aetherv -Code 'invalid_argument' -Message ('memory ' + $memory + ' GB is outside 1..' + $limits.memory_gb + ' GB')
        }
        if (([long]$memory * $script:AethervGiB) -ne $vm.MemoryStartup) {
            if ($running -and -not $vm.DynamicMemoryEnabled) {
                Stop-Aetherv -Code 'invalid_state' -Message ("Cannot change the startup memory of VM '" + $vm.Name + "' while it is " + $vm.State + ".")
            }
            Write-AethervLog ('Set-VMMemory -StartupBytes ' + $memory + 'GB')
            Set-VMMemory -VM $vm -StartupBytes ([long]$memory * $script:AethervGiB)
            $applied += 'memory_gb'
        }
    }
    if ($null -ne $dynamic -and $dynamic -ne [bool]$vm.DynamicMemoryEnabled) {
        if ($running) { $warnings += 'dynamic memory can only be changed while the VM is Off' }
        else {
            Set-VMMemory -VM $vm -DynamicMemoryEnabled $dynamic
            $applied += 'dynamic_memory'
        }
    }
    if ($null -ne $secureBoot) {
        $current = ([string](Get-VMFirmware -VM $vm).SecureBoot -eq 'On')
        if ($secureBoot -ne $current) {
            if ($running) { $warnings += 'secure_boot can only be changed while the VM is Off' }
            else {
                if ($secureBoot) { Set-VMFirmware -VM $vm -EnableSecureBoot On } else { Set-VMFirmware -VM $vm -EnableSecureBoot Off }
                $applied += 'secure_boot'
            }
        }
    }
    if ($null -ne $tpm) {
        $current = [bool](Get-VMSecurity -VM $vm).TpmEnabled
        if ($tpm -ne $current) {
            if ($running) { $warnings += 'tpm can only be changed while the VM is Off' }
            else {
                if ($tpm) {
                    $kp = Get-VMKeyProtector -VM $vm
                    if ($null -eq $kp -or $kp.Length -le 4) { Set-VMKeyProtector -VM $vm -NewLocalKeyProtector }
                    Enable-VMTPM -VM $vm
                }
                else { Disable-VMTPM -VM $vm }
                $applied += 'tpm'
            }
        }
    }
    if ($Spec.ContainsKey('notes') -and $null -ne $Spec['notes']) {
        $notes = [string]$Spec['notes']
        if ($notes -ne [string]$vm.Notes) {
            Set-VM -VM $vm -Notes $notes
            $applied += 'notes'
        }
    }
    foreach ($w in $warnings) { Write-AethervLog ('WARNING: ' + $w) }
    if ($applied.Count -eq 0) { $message = "No changes applied to VM '" + $vm.Name + "'" }
    else { $message = "Updated VM '" + $vm.Name + "': " + ($applied -join ', ') }
    Write-AethervLog $message
    return @{
        message = $message
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; updates_applied = $applied; warnings = $warnings; message = $message }
    }
}

function Invoke-AethervVmDelete {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $force = Get-AethervBool -Spec $Spec -Key 'force'
    $deleteDisks = Get-AethervBool -Spec $Spec -Key 'delete_disks'
    if ([string]$vm.State -ne 'Off' -and -not $force) {
        Stop-Aetherv -Code 'invalid_state' -Message ("VM '" + $vm.Name + "' is " + $vm.State + "; stop it first or pass force")
    }
    $drives = @(Get-VMHardDiskDrive -VM $vm)
    if ($drives.Count -gt 0 -and -not $deleteDisks) {
        Stop-Aetherv -Code 'disks_attached' -Message ("VM '" + $vm.Name + "' has " + $drives.Count + " disk(s) attached; pass delete_disks to delete them")
    }
    foreach ($d in $drives) {
        if ($d.PSObject.Properties.Name -contains 'SupportPersistentReservations' -and $d.SupportPersistentReservations) {
            Stop-Aetherv -Code 'shared_disk' -Message ("disk '" + $d.Path + "' is a shared VHDX (persistent reservations); refusing to delete it")
        }
    }
    if ([string]$vm.State -ne 'Off') {
        Write-AethervLog ("Stop-VM -Force '" + $vm.Name + "'")
        Stop-VM -VM $vm -TurnOff -Force
    }
    if ($vm.IsClustered) {
        Write-AethervLog ("Removing '" + $vm.Name + "' from cluster")
        try { [void](Remove-AethervClusteredVm -Vm $vm) } catch { Write-AethervLog ('WARNING: removing the cluster role failed: ' + $_.Exception.Message) }
    }
    $paths = @()
    foreach ($d in $drives) {
        $paths += [string]$d.Path
        Remove-VMHardDiskDrive -VMHardDiskDrive $d
    }
    $id = [string]$vm.Id
    $name = $vm.Name
    Write-AethervLog ("Remove-VM -Force '" + $name + "'")
    Remove-VM -VM $vm -Force
    foreach ($p in $paths) {
        Write-AethervLog ('Removing disk ' + $p)
        Remove-Item -LiteralPath $p -Force
        if (Test-Path -LiteralPath $p) { Stop-Aetherv -Code 'operation_error' -Message ('disk file ' + $p + ' still exists after deletion') }
    }
    return @{
        message = ("VM '" + $name + "' deleted")
        data    = [ordered]@{ vm_id = $id; vm_name = $name; status = 'deleted'; disks_deleted = ($paths.Count -gt 0); disk_count = $paths.Count }
    }
}

function Invoke-AethervVmPower {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $action = (Get-AethervRequiredString -Spec $Spec -Key 'action').ToLowerInvariant()
    $matrix = @{
        start    = @{ from = @('Off', 'Paused', 'Saved'); to = 'Running' }
        shutdown = @{ from = @('Running'); to = 'Off' }
        stop     = @{ from = @('Running', 'Paused', 'Saved'); to = 'Off' }
        reset    = @{ from = @('Running'); to = 'Running' }
        pause    = @{ from = @('Running'); to = 'Paused' }
        resume   = @{ from = @('Paused'); to = 'Running' }
        save     = @{ from = @('Running', 'Paused'); to = 'Saved' }
    }
    if (-not $matrix.ContainsKey($action)) {
        Stop-Aetherv -Code 'invalid_argument' -Message ("unknown power action '" + $action + "' (start, shutdown, stop, reset)")
    }
    $from = [string]$vm.State
    if ($matrix[$action].from -notcontains $from) {
        Stop-Aetherv -Code 'invalid_state' -Message ("Cannot " + $action + " VM '" + $vm.Name + "' because it is " + $from + ".")
    }
    try {
        switch ($action) {
            'start' { if ($from -eq 'Paused') { Resume-VM -VM $vm } else { Start-VM -VM $vm } }
            'shutdown' { Stop-VM -VM $vm -Force }
            'stop' { Stop-VM -VM $vm -TurnOff -Force }
            'reset' { Restart-VM -VM $vm -Force }
            'pause' { Suspend-VM -VM $vm }
            'resume' { Resume-VM -VM $vm }
            'save' { Save-VM -VM $vm }
        }
    }
    catch {
        if ($_.Exception.Message -match 'memory') { Stop-Aetherv -Code 'insufficient_memory' -Message $_.Exception.Message }
        throw
    }
    $to = $matrix[$action].to
    Write-AethervLog ("VM '" + $vm.Name + "' " + $action + ': ' + $from + ' -> ' + $to)
    return @{
        message = ("VM '" + $vm.Name + "' " + $action + ': ' + $from + ' -> ' + $to)
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; action = $action; previous_state = $from; state = $to }
    }
}
