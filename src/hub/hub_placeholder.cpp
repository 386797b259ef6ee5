// placeholder until the hub sources land
