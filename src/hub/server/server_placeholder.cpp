// placeholder until the server sources land
