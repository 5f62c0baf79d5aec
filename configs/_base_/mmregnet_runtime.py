# Registers mmregnet's RegNet and checks each neck against its backbone before a run.
custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)
custom_hooks = [dict(type='mmregnet.NeckChannelsCheckHook')]
