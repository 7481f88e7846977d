from transformer.service import main

main()
